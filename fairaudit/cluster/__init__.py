"""Run the per-file work (decode, preprocessing, inference) on a Dask cluster: `--scheduler`.

`connect("tcp://HOST:PORT")` joins an existing dask.distributed cluster; `connect("local:N")`
starts a LocalCluster of N worker processes. While the `with` block lasts, the session is
*active*: `fairaudit.io.dicom.iter_outcomes` and `fairaudit.models.inference.run_inference`
send their per-file work to it in bounded batches and stream the results back in path
order; statistics and reports stay on the client. Dask is an optional extra
(`pip install 'fairaudit-imaging[dask]'`); nothing here imports it before `connect` is called.
"""

from fairaudit.cluster._session import (
    INSTALL_HINT,
    ClusterSession,
    SchedulerSpec,
    active,
    connect,
    parse_scheduler,
)

__all__ = ["INSTALL_HINT", "ClusterSession", "SchedulerSpec", "active", "connect", "parse_scheduler"]

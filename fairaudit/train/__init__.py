"""`fairaudit train`: data loading, patient-level split, training loop, validation.

Imports torch (through .loop); the CLI imports it lazily inside the command.
"""

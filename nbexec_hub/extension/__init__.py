"""The Execution API: a Jupyter Server extension adding ``/api/executions``."""

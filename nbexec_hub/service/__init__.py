"""The JupyterHub managed service ``nbexec``: status, start and forwarding of executions."""

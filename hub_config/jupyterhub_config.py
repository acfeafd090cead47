"""JupyterHub configuration for nbexec-hub: copy the parts you need into your hub's config.

What it sets up:

1. the managed service ``nbexec`` (``python -m nbexec_hub.service``) at /services/nbexec/;
2. a role giving the service's token what it needs: read users and servers, list
   them (for ``GET /api/executions``), start servers, and mint per-server tokens: the
   service never sends its own token to a user's server (users control their servers),
   only a token of that user with the single scope ``access:servers!server=U/S``;
3. permission for users to use the service (``access:services!service=nbexec``);
4. the OAuth scopes the service's browser login may carry, so that an admin (or a
   user a server was shared with) keeps ``access:servers`` when acting through the page;
5. ``c.JupyterHub.public_url``, from which the service learns where the proxy is;
6. named servers, which the service supports as ``/api/users/U/servers/S/...``.

The single-user servers need nothing here: ``pip install nbexec-hub`` in their
environment enables the Execution API extension by itself.

Kubernetes (zero-to-jupyterhub): put the same pieces in the chart's values instead:

    hub:
      services:
        nbexec:
          command: ["python", "-m", "nbexec_hub.service", "--ip=0.0.0.0",
                    "--proxy-url=http://proxy-public/"]   # the proxy's in-cluster address
          url: http://hub:10101        # runs in the hub pod, reached through the hub Service
          oauth_no_confirm: true
          oauth_client_allowed_scopes: ["access:servers", "start:servers"]
      service:
        extraPorts: [{name: nbexec, port: 10101, targetPort: 10101}]
      networkPolicy:                   # let the proxy pod reach the service's port
        ingress:
          - ports: [{port: 10101}]
            from: [{podSelector: {matchLabels: {hub.jupyter.org/network-access-hub: "true"}}}]
      loadRoles:
        nbexec-service:
          scopes: [read:users, list:users, read:servers, servers, tokens]
          services: [nbexec]
        user:
          scopes: [self, "access:services!service=nbexec"]
    singleuser:
      image: {name: your-image-with-nbexec-hub-installed}

and install ``nbexec-hub`` into the hub image as well (the service runs there). With
the chart the proxy is another pod, so set the proxy URL explicitly as above rather
than relying on ``public_url``.
"""

import sys

c = get_config()  # noqa: F821  (provided by JupyterHub when it loads this file)

# -- where the hub is reached --------------------------------------------------------
# The public URL of the hub (the proxy). JupyterHub passes it to services as
# JUPYTERHUB_PUBLIC_HUB_URL; the nbexec service sends forwarded requests there.
# The service never derives this address from a request's Host or X-Forwarded-* headers,
# so a caller can never redirect the service's token elsewhere.
# Without public_url, give the service --proxy-url=... in its command (see below).
c.JupyterHub.public_url = "https://hub.example.org/"

# -- the nbexec service --------------------------------------------------------------
NBEXEC_PORT = 10101
c.JupyterHub.services = [
    {
        "name": "nbexec",
        # the hub runs the service as a subprocess with the JUPYTERHUB_* environment
        "command": [sys.executable, "-m", "nbexec_hub.service"],
        # where the service listens; the proxy routes /services/nbexec/ here
        "url": f"http://127.0.0.1:{NBEXEC_PORT}",
        # no "authorize nbexec?" page when users log in to the service's page
        "oauth_no_confirm": True,
        # what the service's browser login may do on the user's behalf (each user gets
        # the part of these they hold themselves): admins keep access to other users'
        # servers, users a server was shared with keep access to it.
        "oauth_client_allowed_scopes": ["access:servers", "start:servers"],
        "display": True,
        "info": {"description": "Run notebooks with parameters and watch them run"},
    }
]

# -- roles -----------------------------------------------------------------------------
c.JupyterHub.load_roles = [
    {
        # the service's own token: everything it needs, nothing more
        "name": "nbexec-service",
        "scopes": [
            "read:users",  # user models (does the user exist?)
            "list:users",  # GET /api/executions lists the ready servers
            "read:servers",  # server models and spawn progress
            "servers",  # start servers for callers allowed to (?start=1, POST .../server)
            # mint, per server U/S, a short-lived token of U with the one scope
            # access:servers!server=U/S: the only credential sent to a user's server
            "tokens",
            # NOT access:servers: the service's own token never goes to users' servers,
            # and with access:servers anyone who got hold of it could use every server
        ],
        "services": ["nbexec"],
    },
    {
        # every user may use the service (the default user role is just "self")
        "name": "user",
        "scopes": ["self", "access:services!service=nbexec"],
    },
    # To let only some users run notebooks through the service, leave "user" alone and
    # grant a role like this one to a group instead:
    # {"name": "nbexec-users", "scopes": ["access:services!service=nbexec"],
    #  "groups": ["data-team"]},
]
# Inside a user's server, JUPYTERHUB_API_TOKEN carries only the hub's default server
# scopes; adding the service lets `nbexec run …` in a terminal of that server just work.
c.Spawner.server_token_scopes = [
    "users:activity!user",
    "access:servers!server",
    "access:services!service=nbexec",
]
# Admins already hold access:services and access:servers, so they may run notebooks on
# anyone's server. A token created with only "access:servers!user=alice" and
# "access:services!service=nbexec" may run notebooks on alice's servers and nothing else.

# -- named servers ---------------------------------------------------------------------
# Each named server is an ordinary Jupyter server with the Execution API, reached as
# /services/nbexec/api/users/<user>/servers/<name>/executions.
c.JupyterHub.allow_named_servers = True

# -- optional --------------------------------------------------------------------------
# Idle culling: running executions count as activity, so the culler leaves busy servers.
# Keep servers running across hub restarts so executions are not interrupted:
# c.JupyterHub.cleanup_servers = False
# The hub's home page can also show whether the user's default server is running and how
# its start is going (nbexec's home.html extends the hub's own and asks only the hub's API;
# its script is loaded from the service's static files, /services/nbexec/static/).
# nbexec_template_dirs() finds the templates in a checkout or under
# <prefix>/share/nbexec-hub/templates after pip install; remove these lines to keep the
# hub's plain home page.
from nbexec_hub.service.page import nbexec_template_dirs  # noqa: E402

c.JupyterHub.template_paths = nbexec_template_dirs()

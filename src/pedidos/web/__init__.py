"""The HTTP layer: routes, input, problems, access, the dashboard and the servers."""

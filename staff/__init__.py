"""The staff product: roles (Django groups with named permissions), and, on top of every other
app, the dashboard at /staff/. Nothing imports `staff`."""

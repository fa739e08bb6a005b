"""credenza's built-in plugins, one module each, declared as entry points like any other plugin."""

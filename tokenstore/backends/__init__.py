"""Built-in backends, one module each. Importing this package imports no SDK: see tokenstore._registry."""

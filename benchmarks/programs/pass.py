# An empty program: what 'python -c pass' runs, as a file for tools that need one.

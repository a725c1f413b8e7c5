print("first line", flush=True)

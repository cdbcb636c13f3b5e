print("storage bench: not yet")

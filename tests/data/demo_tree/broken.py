def broken(:
    print("never parsed")

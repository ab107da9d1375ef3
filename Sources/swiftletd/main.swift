print("swiftletd")

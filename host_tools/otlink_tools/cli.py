def main():
    raise SystemExit("otlink: not built yet")

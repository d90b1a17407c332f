"""Local fake servers that speak the providers' wire formats, so the real SDKs run in tests."""

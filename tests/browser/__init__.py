"""Browser tests: the web client in headless Chromium (Playwright)."""

"""The web demo: a local server for the page (``static/``) and the headless-Chromium check."""

"""The Intuned edge: result models, the Run API client and the bundled fake server."""

"""The Intuned edge: result models and the Run API client (the fake lives in relay.fake_intuned)."""

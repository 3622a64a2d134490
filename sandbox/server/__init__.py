"""The sandbox HTTP/WebSocket server: authentication, throttling and the FastAPI app."""

"""Login, logout and server-side sessions (cookie + Redis)."""

"""Cross-cutting parts of the service: connections, middleware, errors, logging, metrics."""

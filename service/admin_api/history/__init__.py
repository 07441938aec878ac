"""The caller's conversations: list (offset or keyset paging), detail, rename, soft delete."""

"""Request and response bodies of /api/v1/auth."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from admin_api.core.text import StoredText


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: StoredText = Field(min_length=1, max_length=64)
    # Bounded so a huge "password" cannot make the hash expensive.
    password: str = Field(min_length=1, max_length=1024, repr=False)


class UserOut(BaseModel):
    id: int
    username: str
    is_admin: bool

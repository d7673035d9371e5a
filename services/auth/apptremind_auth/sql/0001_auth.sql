-- depends: 0000_platform_outbox_inbox
-- The auth-service's tables: users, refresh-token families, signing keys, memberships and invitations.
-- Every timestamp is written by the service from its clock (not now()), so tests can move time.

CREATE TABLE users (
    user_id       uuid        PRIMARY KEY,
    -- Trimmed and lower-cased by the service; the check keeps the unique index case-insensitive.
    email         text        NOT NULL CHECK (email = lower(email)),
    -- argon2id, in the PHC string format (parameters travel with the hash).
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL
);
CREATE UNIQUE INDEX users_email ON users (email);

-- One family per log-in: every refresh token issued by rotating from that log-in belongs to it, so a reused
-- (stolen) token can revoke everything descended from the same log-in.
CREATE TABLE refresh_families (
    family_id      uuid        PRIMARY KEY,
    user_id        uuid        NOT NULL REFERENCES users (user_id),
    created_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_reason text
);
-- ChangePassword revokes a user's live families.
CREATE INDEX refresh_families_live_by_user ON refresh_families (user_id) WHERE revoked_at IS NULL;

CREATE TABLE refresh_tokens (
    -- sha256 of the token; the token itself is never stored.
    token_hash bytea       PRIMARY KEY,
    family_id  uuid        NOT NULL REFERENCES refresh_families (family_id) ON DELETE CASCADE,
    issued_at  timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    -- Set when the token was exchanged; presenting it again is reuse.
    spent_at   timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- Ed25519 keys that sign access tokens. A key is "next" (published in the JWKS, not yet signing), then
-- "current" (signing), then "retired" (still published until the tokens it signed have expired).
-- Publishing the next key ahead of use means verifiers that cache the JWKS already know a key when
-- rotation makes it current.
CREATE TABLE signing_keys (
    kid          text        PRIMARY KEY,
    -- The raw 32-byte Ed25519 private key.
    private_key  bytea       NOT NULL CHECK (length(private_key) = 32),
    created_at   timestamptz NOT NULL,
    activated_at timestamptz,
    retired_at   timestamptz,
    CHECK (retired_at IS NULL OR activated_at IS NOT NULL)
);
-- At most one current and one next key.
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys ((true))
    WHERE activated_at IS NOT NULL AND retired_at IS NULL;
CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys ((true)) WHERE activated_at IS NULL;

CREATE TABLE memberships (
    business_id uuid        NOT NULL,
    user_id     uuid        NOT NULL REFERENCES users (user_id),
    role        text        NOT NULL CHECK (role IN ('owner', 'admin', 'staff')),
    granted_at  timestamptz NOT NULL,
    PRIMARY KEY (business_id, user_id)
);
-- The one index that does not lead with business_id: a user's own memberships across all businesses,
-- which every access token lists (LogIn, RefreshSession, GetMe). It is read by user_id, never by tenant.
CREATE INDEX memberships_by_user ON memberships (user_id, business_id);

CREATE TABLE invitations (
    business_id   uuid        NOT NULL,
    invitation_id uuid        NOT NULL,
    email         text        NOT NULL CHECK (email = lower(email)),
    role          text        NOT NULL CHECK (role IN ('admin', 'staff')),
    -- sha256 of the invitation token; the token names its business, so the lookup is tenant-scoped too.
    token_hash    bytea       NOT NULL,
    invited_by    uuid        NOT NULL REFERENCES users (user_id),
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    accepted_at   timestamptz,
    accepted_by   uuid        REFERENCES users (user_id),
    PRIMARY KEY (business_id, invitation_id)
);
CREATE UNIQUE INDEX invitations_token ON invitations (business_id, token_hash);

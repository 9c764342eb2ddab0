-- Berth schema, SQLite flavour. Kept column-for-column identical to ../postgres.
-- Times are Unix seconds (INTEGER); flags are 0/1 integers so both engines decode alike
-- through sqlx's Any driver. AUTOINCREMENT: a container id (hence its uid) is never reused.

CREATE TABLE customers (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    email         TEXT    NOT NULL DEFAULT '',
    company       TEXT,
    vat           TEXT,
    uuid          TEXT    NOT NULL UNIQUE,
    active        INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id  INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    secret_hash  TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);
CREATE INDEX api_tokens_customer ON api_tokens(customer_id);

CREATE TABLE servers (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    name     TEXT    NOT NULL UNIQUE,
    address  TEXT    NOT NULL,
    memory   INTEGER NOT NULL CHECK (memory >= 0),
    storage  INTEGER NOT NULL CHECK (storage >= 0),
    uuid     TEXT    NOT NULL UNIQUE,
    owner_id INTEGER REFERENCES customers(id) ON DELETE SET NULL,
    portmappings_mtime INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX servers_owner ON servers(owner_id);
CREATE INDEX servers_address ON servers(address);

CREATE TABLE legions (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    name    TEXT NOT NULL UNIQUE,
    address TEXT NOT NULL
);

CREATE TABLE legion_nodes (
    legion_id INTEGER NOT NULL REFERENCES legions(id) ON DELETE CASCADE,
    server_id INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    PRIMARY KEY (legion_id, server_id)
);
CREATE INDEX legion_nodes_server ON legion_nodes(server_id);

CREATE TABLE distros (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL UNIQUE,
    uuid TEXT NOT NULL UNIQUE,
    note TEXT
);

CREATE TABLE containers (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id      INTEGER NOT NULL REFERENCES customers(id),
    server_id        INTEGER NOT NULL REFERENCES servers(id),
    name             TEXT    NOT NULL,
    memory           INTEGER NOT NULL CHECK (memory > 0),
    storage          INTEGER NOT NULL CHECK (storage > 0),
    uuid             TEXT    NOT NULL UNIQUE,
    distro_id        INTEGER REFERENCES distros(id),
    custom_distro_id INTEGER REFERENCES custom_distros(id) ON DELETE SET NULL,
    ssh_keys_raw     TEXT,
    jid              TEXT,
    jid_secret       TEXT,
    jid_destinations TEXT,
    pushover_user    TEXT,
    pushover_token   TEXT,
    pushover_sound   TEXT,
    pushbullet_token TEXT,
    slack_webhook    TEXT,
    quota_threshold  INTEGER NOT NULL DEFAULT 90,
    alarm_freq       INTEGER NOT NULL DEFAULT 60,
    nofollow         INTEGER NOT NULL DEFAULT 0 CHECK (nofollow IN (0, 1)),
    note             TEXT,
    custom_distros_storage INTEGER NOT NULL DEFAULT 0 CHECK (custom_distros_storage IN (0, 1)),
    secret_uuid      TEXT,
    alarm_key        TEXT,
    max_alarms       INTEGER NOT NULL DEFAULT 100,
    generation       INTEGER NOT NULL DEFAULT 1,
    last_reboot      INTEGER NOT NULL DEFAULT 0,
    ssh_keys_mtime   INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX containers_customer ON containers(customer_id);
CREATE INDEX containers_server ON containers(server_id);

CREATE TABLE custom_distros (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    container_id INTEGER NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    path         TEXT NOT NULL,
    note         TEXT,
    uuid         TEXT NOT NULL UNIQUE,
    UNIQUE (container_id, name),
    UNIQUE (container_id, path)
);

CREATE TABLE container_links (
    container_id INTEGER NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
    to_id        INTEGER NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
    PRIMARY KEY (container_id, to_id),
    CHECK (container_id <> to_id)
);
CREATE INDEX container_links_to ON container_links(to_id);

CREATE TABLE portmaps (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id    INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    container_id INTEGER NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
    proto        TEXT    NOT NULL CHECK (proto IN ('tcp', 'udp')),
    public_port  INTEGER NOT NULL CHECK (public_port BETWEEN 1024 AND 65535),
    private_port INTEGER NOT NULL CHECK (private_port BETWEEN 1024 AND 65535),
    created_at   INTEGER NOT NULL,
    UNIQUE (server_id, proto, public_port),
    UNIQUE (container_id, proto, private_port)
);
CREATE INDEX portmaps_container ON portmaps(container_id);

CREATE TABLE loopboxes (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    container_id INTEGER NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
    filename     TEXT    NOT NULL,
    mountpoint   TEXT    NOT NULL,
    ro           INTEGER NOT NULL DEFAULT 0 CHECK (ro IN (0, 1)),
    UNIQUE (container_id, filename),
    UNIQUE (container_id, mountpoint)
);

CREATE TABLE domains (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    name        TEXT    NOT NULL UNIQUE,
    uuid        TEXT    NOT NULL UNIQUE,
    note        TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX domains_customer ON domains(customer_id);

CREATE TABLE tags (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    note        TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (customer_id, name)
);

CREATE TABLE container_tags (
    container_id INTEGER NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
    tag_id       INTEGER NOT NULL REFERENCES tags(id) ON DELETE CASCADE,
    PRIMARY KEY (container_id, tag_id)
);
CREATE INDEX container_tags_tag ON container_tags(tag_id);

CREATE TABLE domain_tags (
    domain_id INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    tag_id    INTEGER NOT NULL REFERENCES tags(id) ON DELETE CASCADE,
    PRIMARY KEY (domain_id, tag_id)
);
CREATE INDEX domain_tags_tag ON domain_tags(tag_id);

CREATE TABLE loopbox_tags (
    loopbox_id INTEGER NOT NULL REFERENCES loopboxes(id) ON DELETE CASCADE,
    tag_id     INTEGER NOT NULL REFERENCES tags(id) ON DELETE CASCADE,
    PRIMARY KEY (loopbox_id, tag_id)
);
CREATE INDEX loopbox_tags_tag ON loopbox_tags(tag_id);

CREATE TABLE custom_distro_tags (
    custom_distro_id INTEGER NOT NULL REFERENCES custom_distros(id) ON DELETE CASCADE,
    tag_id           INTEGER NOT NULL REFERENCES tags(id) ON DELETE CASCADE,
    PRIMARY KEY (custom_distro_id, tag_id)
);
CREATE INDEX custom_distro_tags_tag ON custom_distro_tags(tag_id);

CREATE TABLE alarms (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    container_id INTEGER NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
    unix         INTEGER NOT NULL,
    level        INTEGER NOT NULL CHECK (level >= 0),
    color        TEXT    NOT NULL DEFAULT '#ffffff',
    msg          TEXT    NOT NULL,
    line         INTEGER CHECK (line >= 0),
    func         TEXT,
    filename     TEXT,
    class        TEXT,
    vassal       TEXT
);
CREATE INDEX alarms_container_unix ON alarms(container_id, unix);

CREATE TABLE news (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    content    TEXT    NOT NULL,
    public     INTEGER NOT NULL DEFAULT 0 CHECK (public IN (0, 1)),
    created_at INTEGER NOT NULL
);

-- One row per container, series and day; `json` is the day's `[[unix, value], ...]` text.
CREATE TABLE container_metrics (
    container_id INTEGER NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
    kind         TEXT    NOT NULL,
    year         INTEGER NOT NULL,
    month        INTEGER NOT NULL,
    day          INTEGER NOT NULL,
    json         TEXT,
    PRIMARY KEY (container_id, kind, year, month, day)
);

CREATE TABLE domain_metrics (
    domain_id    INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    container_id INTEGER NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
    kind         TEXT    NOT NULL,
    year         INTEGER NOT NULL,
    month        INTEGER NOT NULL,
    day          INTEGER NOT NULL,
    json         TEXT,
    PRIMARY KEY (domain_id, container_id, kind, year, month, day)
);
CREATE INDEX domain_metrics_container ON domain_metrics(container_id, kind, year, month, day);

-- Data versions: a number that moves with every committed change a customer can read
-- (scope = the customer's id), and one for what every customer reads (scope 0: servers,
-- legions, distros, news). The GraphQL gateway keeps answers of queries and serves one
-- again only while both numbers it was computed under are unchanged, so a change committed
-- by any process (another gateway, `berth admin`, an agent) is seen by the next request.
-- The triggers below are the only writers: no code path can change a row and forget to
-- move the version. A row is never deleted, so a version never goes back to a value an
-- old answer was kept under. Tables no query shows (alarm_deliveries, event_outbox) have none.
-- What agents write all the time is left out too, and no kept answer shows it (the
-- gateway's VOLATILE_FIELDS): the metric series (container_metrics, domain_metrics, a
-- sample per container every minute) and container_runtime's usage figures and counters;
-- so is api_tokens.last_used_at, which moves on every bearer request. Otherwise a customer
-- with many running containers would have its version moving many times a second.
CREATE TABLE data_versions (
    scope   INTEGER PRIMARY KEY,
    version INTEGER NOT NULL
);

CREATE TRIGGER customers_insert_moves_versions AFTER INSERT ON customers BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT NEW.id AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER customers_update_moves_versions AFTER UPDATE ON customers BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT OLD.id AS scope UNION SELECT NEW.id AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER customers_delete_moves_versions AFTER DELETE ON customers BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT OLD.id AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER api_tokens_insert_moves_versions AFTER INSERT ON api_tokens BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT NEW.customer_id AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER api_tokens_update_moves_versions AFTER UPDATE OF name, secret_hash, customer_id ON api_tokens BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT OLD.customer_id AS scope UNION SELECT NEW.customer_id AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER api_tokens_delete_moves_versions AFTER DELETE ON api_tokens BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT OLD.customer_id AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER containers_insert_moves_versions AFTER INSERT ON containers BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT NEW.customer_id AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER containers_update_moves_versions AFTER UPDATE ON containers BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT OLD.customer_id AS scope UNION SELECT NEW.customer_id AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER containers_delete_moves_versions AFTER DELETE ON containers BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT OLD.customer_id AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER custom_distros_insert_moves_versions AFTER INSERT ON custom_distros BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT customer_id AS scope FROM containers WHERE id = NEW.container_id) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER custom_distros_update_moves_versions AFTER UPDATE ON custom_distros BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT customer_id AS scope FROM containers WHERE id = OLD.container_id UNION SELECT customer_id AS scope FROM containers WHERE id = NEW.container_id) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER custom_distros_delete_moves_versions AFTER DELETE ON custom_distros BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT customer_id AS scope FROM containers WHERE id = OLD.container_id) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER container_links_insert_moves_versions AFTER INSERT ON container_links BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT customer_id AS scope FROM containers WHERE id IN (NEW.container_id, NEW.to_id)) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER container_links_update_moves_versions AFTER UPDATE ON container_links BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT customer_id AS scope FROM containers WHERE id IN (OLD.container_id, OLD.to_id) UNION SELECT customer_id AS scope FROM containers WHERE id IN (NEW.container_id, NEW.to_id)) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER container_links_delete_moves_versions AFTER DELETE ON container_links BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT customer_id AS scope FROM containers WHERE id IN (OLD.container_id, OLD.to_id)) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER portmaps_insert_moves_versions AFTER INSERT ON portmaps BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT customer_id AS scope FROM containers WHERE id = NEW.container_id) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER portmaps_update_moves_versions AFTER UPDATE ON portmaps BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT customer_id AS scope FROM containers WHERE id = OLD.container_id UNION SELECT customer_id AS scope FROM containers WHERE id = NEW.container_id) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER portmaps_delete_moves_versions AFTER DELETE ON portmaps BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT customer_id AS scope FROM containers WHERE id = OLD.container_id) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER loopboxes_insert_moves_versions AFTER INSERT ON loopboxes BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT customer_id AS scope FROM containers WHERE id = NEW.container_id) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER loopboxes_update_moves_versions AFTER UPDATE ON loopboxes BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT customer_id AS scope FROM containers WHERE id = OLD.container_id UNION SELECT customer_id AS scope FROM containers WHERE id = NEW.container_id) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER loopboxes_delete_moves_versions AFTER DELETE ON loopboxes BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT customer_id AS scope FROM containers WHERE id = OLD.container_id) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER domains_insert_moves_versions AFTER INSERT ON domains BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT NEW.customer_id AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER domains_update_moves_versions AFTER UPDATE ON domains BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT OLD.customer_id AS scope UNION SELECT NEW.customer_id AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER domains_delete_moves_versions AFTER DELETE ON domains BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT OLD.customer_id AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER tags_insert_moves_versions AFTER INSERT ON tags BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT NEW.customer_id AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER tags_update_moves_versions AFTER UPDATE ON tags BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT OLD.customer_id AS scope UNION SELECT NEW.customer_id AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER tags_delete_moves_versions AFTER DELETE ON tags BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT OLD.customer_id AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER container_tags_insert_moves_versions AFTER INSERT ON container_tags BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT customer_id AS scope FROM containers WHERE id = NEW.container_id) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER container_tags_update_moves_versions AFTER UPDATE ON container_tags BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT customer_id AS scope FROM containers WHERE id = OLD.container_id UNION SELECT customer_id AS scope FROM containers WHERE id = NEW.container_id) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER container_tags_delete_moves_versions AFTER DELETE ON container_tags BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT customer_id AS scope FROM containers WHERE id = OLD.container_id) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER domain_tags_insert_moves_versions AFTER INSERT ON domain_tags BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT customer_id AS scope FROM domains WHERE id = NEW.domain_id) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER domain_tags_update_moves_versions AFTER UPDATE ON domain_tags BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT customer_id AS scope FROM domains WHERE id = OLD.domain_id UNION SELECT customer_id AS scope FROM domains WHERE id = NEW.domain_id) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER domain_tags_delete_moves_versions AFTER DELETE ON domain_tags BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT customer_id AS scope FROM domains WHERE id = OLD.domain_id) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER loopbox_tags_insert_moves_versions AFTER INSERT ON loopbox_tags BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT c.customer_id AS scope FROM loopboxes l JOIN containers c ON c.id = l.container_id WHERE l.id = NEW.loopbox_id) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER loopbox_tags_update_moves_versions AFTER UPDATE ON loopbox_tags BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT c.customer_id AS scope FROM loopboxes l JOIN containers c ON c.id = l.container_id WHERE l.id = OLD.loopbox_id UNION SELECT c.customer_id AS scope FROM loopboxes l JOIN containers c ON c.id = l.container_id WHERE l.id = NEW.loopbox_id) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER loopbox_tags_delete_moves_versions AFTER DELETE ON loopbox_tags BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT c.customer_id AS scope FROM loopboxes l JOIN containers c ON c.id = l.container_id WHERE l.id = OLD.loopbox_id) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER custom_distro_tags_insert_moves_versions AFTER INSERT ON custom_distro_tags BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT c.customer_id AS scope FROM custom_distros d JOIN containers c ON c.id = d.container_id WHERE d.id = NEW.custom_distro_id) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER custom_distro_tags_update_moves_versions AFTER UPDATE ON custom_distro_tags BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT c.customer_id AS scope FROM custom_distros d JOIN containers c ON c.id = d.container_id WHERE d.id = OLD.custom_distro_id UNION SELECT c.customer_id AS scope FROM custom_distros d JOIN containers c ON c.id = d.container_id WHERE d.id = NEW.custom_distro_id) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER custom_distro_tags_delete_moves_versions AFTER DELETE ON custom_distro_tags BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT c.customer_id AS scope FROM custom_distros d JOIN containers c ON c.id = d.container_id WHERE d.id = OLD.custom_distro_id) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER alarms_insert_moves_versions AFTER INSERT ON alarms BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT customer_id AS scope FROM containers WHERE id = NEW.container_id) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER alarms_update_moves_versions AFTER UPDATE ON alarms BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT customer_id AS scope FROM containers WHERE id = OLD.container_id UNION SELECT customer_id AS scope FROM containers WHERE id = NEW.container_id) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER alarms_delete_moves_versions AFTER DELETE ON alarms BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT customer_id AS scope FROM containers WHERE id = OLD.container_id) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER container_runtime_insert_moves_versions AFTER INSERT ON container_runtime BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT customer_id AS scope FROM containers WHERE id = NEW.container_id) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER container_runtime_update_moves_versions AFTER UPDATE OF state, pid, started_at, observed_generation, last_error, container_id ON container_runtime BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT customer_id AS scope FROM containers WHERE id = OLD.container_id UNION SELECT customer_id AS scope FROM containers WHERE id = NEW.container_id) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER container_runtime_delete_moves_versions AFTER DELETE ON container_runtime BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT customer_id AS scope FROM containers WHERE id = OLD.container_id) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER servers_insert_moves_versions AFTER INSERT ON servers BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT 0 AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
-- Not on an update that changes nothing: taking the row's lock (`SET memory = memory`, the
-- capacity check of every container creation) is not a change anyone can read. A new
-- column of servers joins this list.
CREATE TRIGGER servers_update_moves_versions AFTER UPDATE ON servers WHEN OLD.name IS NOT NEW.name OR OLD.address IS NOT NEW.address OR OLD.memory IS NOT NEW.memory OR OLD.storage IS NOT NEW.storage OR OLD.uuid IS NOT NEW.uuid OR OLD.owner_id IS NOT NEW.owner_id OR OLD.portmappings_mtime IS NOT NEW.portmappings_mtime BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT 0 AS scope UNION SELECT 0 AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER servers_delete_moves_versions AFTER DELETE ON servers BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT 0 AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER legions_insert_moves_versions AFTER INSERT ON legions BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT 0 AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER legions_update_moves_versions AFTER UPDATE ON legions BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT 0 AS scope UNION SELECT 0 AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER legions_delete_moves_versions AFTER DELETE ON legions BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT 0 AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER legion_nodes_insert_moves_versions AFTER INSERT ON legion_nodes BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT 0 AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER legion_nodes_update_moves_versions AFTER UPDATE ON legion_nodes BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT 0 AS scope UNION SELECT 0 AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER legion_nodes_delete_moves_versions AFTER DELETE ON legion_nodes BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT 0 AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER distros_insert_moves_versions AFTER INSERT ON distros BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT 0 AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER distros_update_moves_versions AFTER UPDATE ON distros BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT 0 AS scope UNION SELECT 0 AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER distros_delete_moves_versions AFTER DELETE ON distros BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT 0 AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER news_insert_moves_versions AFTER INSERT ON news BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT 0 AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER news_update_moves_versions AFTER UPDATE ON news BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT 0 AS scope UNION SELECT 0 AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;
CREATE TRIGGER news_delete_moves_versions AFTER DELETE ON news BEGIN
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM (SELECT 0 AS scope) WHERE scope IS NOT NULL
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1;
END;

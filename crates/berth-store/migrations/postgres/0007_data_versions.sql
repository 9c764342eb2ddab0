-- Data versions: a number that moves with every committed change a customer can read
-- (scope = the customer's id), and one for what every customer reads (scope 0: servers,
-- legions, distros, news). The GraphQL gateway keeps answers of queries and serves one
-- again only while both numbers it was computed under are unchanged, so a change committed
-- by any process (another gateway, `berth admin`, an agent) is seen by the next request.
-- The triggers below are the only writers: no code path can change a row and forget to
-- move the version. A row is never deleted, so a version never goes back to a value an
-- old answer was kept under. Tables no query shows (alarm_deliveries) have none.
-- What agents write all the time is left out too, and no kept answer shows it (the
-- gateway's VOLATILE_FIELDS): the metric series (container_metrics, domain_metrics, a
-- sample per container every minute) and container_runtime's usage figures and counters;
-- so is api_tokens.last_used_at, which moves on every bearer request. Otherwise a customer
-- with many running containers would have its version moving many times a second.
CREATE TABLE data_versions (
    scope   BIGINT PRIMARY KEY,
    version BIGINT NOT NULL
);

-- Scopes in ascending order, so two transactions moving the same versions in one
-- statement take their row locks in the same order.
CREATE FUNCTION berth_move_versions(scopes BIGINT[]) RETURNS void LANGUAGE sql AS $$
    INSERT INTO data_versions (scope, version)
    SELECT DISTINCT scope, 1 FROM unnest(scopes) AS changed(scope) WHERE scope IS NOT NULL ORDER BY scope
    ON CONFLICT (scope) DO UPDATE SET version = data_versions.version + 1
$$;

CREATE FUNCTION customers_moves_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN PERFORM berth_move_versions(ARRAY(SELECT NEW.id AS scope)); END IF;
    IF TG_OP <> 'INSERT' THEN PERFORM berth_move_versions(ARRAY(SELECT OLD.id AS scope)); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER customers_moves_versions AFTER INSERT OR UPDATE OR DELETE ON customers
    FOR EACH ROW EXECUTE FUNCTION customers_moves_versions();

CREATE FUNCTION api_tokens_moves_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN PERFORM berth_move_versions(ARRAY(SELECT NEW.customer_id AS scope)); END IF;
    IF TG_OP <> 'INSERT' THEN PERFORM berth_move_versions(ARRAY(SELECT OLD.customer_id AS scope)); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER api_tokens_moves_versions AFTER INSERT OR UPDATE OF name, secret_hash, customer_id OR DELETE ON api_tokens
    FOR EACH ROW EXECUTE FUNCTION api_tokens_moves_versions();

CREATE FUNCTION containers_moves_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN PERFORM berth_move_versions(ARRAY(SELECT NEW.customer_id AS scope)); END IF;
    IF TG_OP <> 'INSERT' THEN PERFORM berth_move_versions(ARRAY(SELECT OLD.customer_id AS scope)); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER containers_moves_versions AFTER INSERT OR UPDATE OR DELETE ON containers
    FOR EACH ROW EXECUTE FUNCTION containers_moves_versions();

CREATE FUNCTION custom_distros_moves_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN PERFORM berth_move_versions(ARRAY(SELECT customer_id AS scope FROM containers WHERE id = NEW.container_id)); END IF;
    IF TG_OP <> 'INSERT' THEN PERFORM berth_move_versions(ARRAY(SELECT customer_id AS scope FROM containers WHERE id = OLD.container_id)); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER custom_distros_moves_versions AFTER INSERT OR UPDATE OR DELETE ON custom_distros
    FOR EACH ROW EXECUTE FUNCTION custom_distros_moves_versions();

CREATE FUNCTION container_links_moves_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN PERFORM berth_move_versions(ARRAY(SELECT customer_id AS scope FROM containers WHERE id IN (NEW.container_id, NEW.to_id))); END IF;
    IF TG_OP <> 'INSERT' THEN PERFORM berth_move_versions(ARRAY(SELECT customer_id AS scope FROM containers WHERE id IN (OLD.container_id, OLD.to_id))); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER container_links_moves_versions AFTER INSERT OR UPDATE OR DELETE ON container_links
    FOR EACH ROW EXECUTE FUNCTION container_links_moves_versions();

CREATE FUNCTION portmaps_moves_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN PERFORM berth_move_versions(ARRAY(SELECT customer_id AS scope FROM containers WHERE id = NEW.container_id)); END IF;
    IF TG_OP <> 'INSERT' THEN PERFORM berth_move_versions(ARRAY(SELECT customer_id AS scope FROM containers WHERE id = OLD.container_id)); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER portmaps_moves_versions AFTER INSERT OR UPDATE OR DELETE ON portmaps
    FOR EACH ROW EXECUTE FUNCTION portmaps_moves_versions();

CREATE FUNCTION loopboxes_moves_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN PERFORM berth_move_versions(ARRAY(SELECT customer_id AS scope FROM containers WHERE id = NEW.container_id)); END IF;
    IF TG_OP <> 'INSERT' THEN PERFORM berth_move_versions(ARRAY(SELECT customer_id AS scope FROM containers WHERE id = OLD.container_id)); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER loopboxes_moves_versions AFTER INSERT OR UPDATE OR DELETE ON loopboxes
    FOR EACH ROW EXECUTE FUNCTION loopboxes_moves_versions();

CREATE FUNCTION domains_moves_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN PERFORM berth_move_versions(ARRAY(SELECT NEW.customer_id AS scope)); END IF;
    IF TG_OP <> 'INSERT' THEN PERFORM berth_move_versions(ARRAY(SELECT OLD.customer_id AS scope)); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER domains_moves_versions AFTER INSERT OR UPDATE OR DELETE ON domains
    FOR EACH ROW EXECUTE FUNCTION domains_moves_versions();

CREATE FUNCTION tags_moves_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN PERFORM berth_move_versions(ARRAY(SELECT NEW.customer_id AS scope)); END IF;
    IF TG_OP <> 'INSERT' THEN PERFORM berth_move_versions(ARRAY(SELECT OLD.customer_id AS scope)); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER tags_moves_versions AFTER INSERT OR UPDATE OR DELETE ON tags
    FOR EACH ROW EXECUTE FUNCTION tags_moves_versions();

CREATE FUNCTION container_tags_moves_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN PERFORM berth_move_versions(ARRAY(SELECT customer_id AS scope FROM containers WHERE id = NEW.container_id)); END IF;
    IF TG_OP <> 'INSERT' THEN PERFORM berth_move_versions(ARRAY(SELECT customer_id AS scope FROM containers WHERE id = OLD.container_id)); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER container_tags_moves_versions AFTER INSERT OR UPDATE OR DELETE ON container_tags
    FOR EACH ROW EXECUTE FUNCTION container_tags_moves_versions();

CREATE FUNCTION domain_tags_moves_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN PERFORM berth_move_versions(ARRAY(SELECT customer_id AS scope FROM domains WHERE id = NEW.domain_id)); END IF;
    IF TG_OP <> 'INSERT' THEN PERFORM berth_move_versions(ARRAY(SELECT customer_id AS scope FROM domains WHERE id = OLD.domain_id)); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER domain_tags_moves_versions AFTER INSERT OR UPDATE OR DELETE ON domain_tags
    FOR EACH ROW EXECUTE FUNCTION domain_tags_moves_versions();

CREATE FUNCTION loopbox_tags_moves_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN PERFORM berth_move_versions(ARRAY(SELECT c.customer_id AS scope FROM loopboxes l JOIN containers c ON c.id = l.container_id WHERE l.id = NEW.loopbox_id)); END IF;
    IF TG_OP <> 'INSERT' THEN PERFORM berth_move_versions(ARRAY(SELECT c.customer_id AS scope FROM loopboxes l JOIN containers c ON c.id = l.container_id WHERE l.id = OLD.loopbox_id)); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER loopbox_tags_moves_versions AFTER INSERT OR UPDATE OR DELETE ON loopbox_tags
    FOR EACH ROW EXECUTE FUNCTION loopbox_tags_moves_versions();

CREATE FUNCTION custom_distro_tags_moves_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN PERFORM berth_move_versions(ARRAY(SELECT c.customer_id AS scope FROM custom_distros d JOIN containers c ON c.id = d.container_id WHERE d.id = NEW.custom_distro_id)); END IF;
    IF TG_OP <> 'INSERT' THEN PERFORM berth_move_versions(ARRAY(SELECT c.customer_id AS scope FROM custom_distros d JOIN containers c ON c.id = d.container_id WHERE d.id = OLD.custom_distro_id)); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER custom_distro_tags_moves_versions AFTER INSERT OR UPDATE OR DELETE ON custom_distro_tags
    FOR EACH ROW EXECUTE FUNCTION custom_distro_tags_moves_versions();

CREATE FUNCTION alarms_moves_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN PERFORM berth_move_versions(ARRAY(SELECT customer_id AS scope FROM containers WHERE id = NEW.container_id)); END IF;
    IF TG_OP <> 'INSERT' THEN PERFORM berth_move_versions(ARRAY(SELECT customer_id AS scope FROM containers WHERE id = OLD.container_id)); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER alarms_moves_versions AFTER INSERT OR UPDATE OR DELETE ON alarms
    FOR EACH ROW EXECUTE FUNCTION alarms_moves_versions();

CREATE FUNCTION container_runtime_moves_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN PERFORM berth_move_versions(ARRAY(SELECT customer_id AS scope FROM containers WHERE id = NEW.container_id)); END IF;
    IF TG_OP <> 'INSERT' THEN PERFORM berth_move_versions(ARRAY(SELECT customer_id AS scope FROM containers WHERE id = OLD.container_id)); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER container_runtime_moves_versions AFTER INSERT OR UPDATE OF state, pid, started_at, observed_generation, last_error, container_id OR DELETE ON container_runtime
    FOR EACH ROW EXECUTE FUNCTION container_runtime_moves_versions();

CREATE FUNCTION servers_moves_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM berth_move_versions(ARRAY(SELECT 0::BIGINT AS scope));
    RETURN NULL;
END $$;
-- Not on an update that changes nothing: taking the row's lock (`SET memory = memory`, the
-- capacity check of every container creation) is not a change anyone can read.
CREATE TRIGGER servers_moves_versions AFTER INSERT OR DELETE ON servers
    FOR EACH ROW EXECUTE FUNCTION servers_moves_versions();
CREATE TRIGGER servers_update_moves_versions AFTER UPDATE ON servers
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION servers_moves_versions();

CREATE FUNCTION legions_moves_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN PERFORM berth_move_versions(ARRAY(SELECT 0::BIGINT AS scope)); END IF;
    IF TG_OP <> 'INSERT' THEN PERFORM berth_move_versions(ARRAY(SELECT 0::BIGINT AS scope)); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER legions_moves_versions AFTER INSERT OR UPDATE OR DELETE ON legions
    FOR EACH ROW EXECUTE FUNCTION legions_moves_versions();

CREATE FUNCTION legion_nodes_moves_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN PERFORM berth_move_versions(ARRAY(SELECT 0::BIGINT AS scope)); END IF;
    IF TG_OP <> 'INSERT' THEN PERFORM berth_move_versions(ARRAY(SELECT 0::BIGINT AS scope)); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER legion_nodes_moves_versions AFTER INSERT OR UPDATE OR DELETE ON legion_nodes
    FOR EACH ROW EXECUTE FUNCTION legion_nodes_moves_versions();

CREATE FUNCTION distros_moves_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN PERFORM berth_move_versions(ARRAY(SELECT 0::BIGINT AS scope)); END IF;
    IF TG_OP <> 'INSERT' THEN PERFORM berth_move_versions(ARRAY(SELECT 0::BIGINT AS scope)); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER distros_moves_versions AFTER INSERT OR UPDATE OR DELETE ON distros
    FOR EACH ROW EXECUTE FUNCTION distros_moves_versions();

CREATE FUNCTION news_moves_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN PERFORM berth_move_versions(ARRAY(SELECT 0::BIGINT AS scope)); END IF;
    IF TG_OP <> 'INSERT' THEN PERFORM berth_move_versions(ARRAY(SELECT 0::BIGINT AS scope)); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER news_moves_versions AFTER INSERT OR UPDATE OR DELETE ON news
    FOR EACH ROW EXECUTE FUNCTION news_moves_versions();

-- "Does this customer run a container on this server?" (servers::visible_to, asked for every
-- page that shows a container's server) was answered by walking every container of the
-- server until one of the customer's turned up: on a shared server with 10,000 containers,
-- ~10 ms per question for a customer with none there. The pair answers it in one probe and
-- still serves lookups by server alone.
DROP INDEX containers_server;
CREATE INDEX containers_server_customer ON containers(server_id, customer_id);

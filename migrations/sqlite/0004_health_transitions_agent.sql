-- Which agent believed a transition: agents of a fleet share one store and may name their
-- targets alike, so each restores only its own believed statuses at start. Additive: an
-- agent of the previous version keeps inserting without it (NULL).
ALTER TABLE health_transitions ADD COLUMN agent TEXT;
CREATE INDEX health_transitions_agent_key ON health_transitions (agent, target, check_name, ts);

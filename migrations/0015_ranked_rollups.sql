-- Rollups that stay small whatever the month (README, "Rollups"): per account and month, the
-- 1,000 resources that cost most and one row for all the others, and per tag key the 1,000
-- values that cost most and one row for the others. A row for the others has resource_id ''
-- (or tag_value ''), which no resource or tag value is, and says how many it stands for. The
-- full grain (focus_costs) still has every resource and tag.
ALTER TABLE resource_costs ADD COLUMN resources bigint NOT NULL DEFAULT 1;
ALTER TABLE tag_costs ADD COLUMN tag_values bigint NOT NULL DEFAULT 1;

-- The rows stored before, ranked the way the service ranks a statement's (by the larger of the
-- unblended and amortized costs, then by name, bytewise), their partial rows added up first.
CREATE TEMPORARY TABLE ranked_resources ON COMMIT DROP AS
WITH summed AS (
    SELECT integration, payer_account_id, entity, billing_period, linked_account_id,
           resource_id, product_name, sum(unblended_cost) AS unblended_cost,
           sum(blended_cost) AS blended_cost, sum(usage_quantity) AS usage_quantity,
           sum(line_items)::bigint AS line_items, sum(amortized_cost) AS amortized_cost
    FROM resource_costs
    GROUP BY integration, payer_account_id, entity, billing_period, linked_account_id,
             resource_id, product_name
), ranked AS (
    SELECT *, row_number() OVER (
        PARTITION BY integration, payer_account_id, entity, billing_period, linked_account_id
        ORDER BY greatest(unblended_cost, amortized_cost) DESC, resource_id COLLATE "C",
                 product_name COLLATE "C") AS rank
    FROM summed
)
SELECT integration, payer_account_id, entity, billing_period, linked_account_id, resource_id,
       product_name, unblended_cost, blended_cost, usage_quantity, line_items, amortized_cost,
       1::bigint AS resources
FROM ranked WHERE rank <= 1000
UNION ALL
SELECT integration, payer_account_id, entity, billing_period, linked_account_id, '', '',
       sum(unblended_cost), sum(blended_cost), sum(usage_quantity), sum(line_items)::bigint,
       sum(amortized_cost), count(*)
FROM ranked WHERE rank > 1000
GROUP BY integration, payer_account_id, entity, billing_period, linked_account_id;

TRUNCATE resource_costs;
INSERT INTO resource_costs (integration, payer_account_id, entity, billing_period,
                            linked_account_id, resource_id, product_name, unblended_cost,
                            blended_cost, usage_quantity, line_items, amortized_cost, resources)
SELECT * FROM ranked_resources;

CREATE TEMPORARY TABLE ranked_tags ON COMMIT DROP AS
WITH summed AS (
    SELECT integration, payer_account_id, entity, billing_period, linked_account_id, tag_key,
           tag_value, sum(unblended_cost) AS unblended_cost, sum(blended_cost) AS blended_cost,
           sum(line_items)::bigint AS line_items, sum(amortized_cost) AS amortized_cost
    FROM tag_costs
    GROUP BY integration, payer_account_id, entity, billing_period, linked_account_id, tag_key,
             tag_value
), ranked AS (
    SELECT *, row_number() OVER (
        PARTITION BY integration, payer_account_id, entity, billing_period, linked_account_id,
                     tag_key
        ORDER BY greatest(unblended_cost, amortized_cost) DESC, tag_value COLLATE "C") AS rank
    FROM summed
)
SELECT integration, payer_account_id, entity, billing_period, linked_account_id, tag_key,
       tag_value, unblended_cost, blended_cost, line_items, amortized_cost, 1::bigint AS tag_values
FROM ranked WHERE rank <= 1000
UNION ALL
SELECT integration, payer_account_id, entity, billing_period, linked_account_id, tag_key, '',
       sum(unblended_cost), sum(blended_cost), sum(line_items)::bigint, sum(amortized_cost),
       count(*)
FROM ranked WHERE rank > 1000
GROUP BY integration, payer_account_id, entity, billing_period, linked_account_id, tag_key;

TRUNCATE tag_costs;
INSERT INTO tag_costs (integration, payer_account_id, entity, billing_period, linked_account_id,
                       tag_key, tag_value, unblended_cost, blended_cost, line_items,
                       amortized_cost, tag_values)
SELECT * FROM ranked_tags;

-- The swap drops the old version's partitions the way drop_daily_partitions does, by calling
-- it (the same function otherwise, as migration 13 made it).
CREATE OR REPLACE FUNCTION swap_daily_partitions(integration text, new_version bigint,
                                                 old_version bigint)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    parent text;
BEGIN
    IF NOT has_table_privilege(session_user, 'public.daily_costs', 'INSERT') THEN
        RAISE EXCEPTION 'permission denied for table daily_costs' USING ERRCODE = '42501';
    END IF;
    PERFORM ensure_integration_partitions(integration);
    EXECUTE format('LOCK TABLE ONLY %I, ONLY %I IN ACCESS EXCLUSIVE MODE',
                   integration_partition('daily_costs', integration),
                   integration_partition('daily_usages', integration));
    FOREACH parent IN ARRAY ARRAY['daily_costs', 'daily_usages'] LOOP
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES IN (%s)',
                       integration_partition(parent, integration), parent || '_' || new_version,
                       new_version);
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT bound_version, DROP CONSTRAINT bound_integration',
                       parent || '_' || new_version);
    END LOOP;
    IF old_version IS NOT NULL THEN
        PERFORM drop_daily_partitions(integration, old_version);
    END IF;
END $$;

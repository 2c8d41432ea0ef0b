-- escalation: who holds a delivery's lease (the instance's static member name), so the same
-- instance restarted after a crash takes back its deliveries at once instead of after the lease.
ALTER TABLE escalation_delivery ADD COLUMN leased_by text;

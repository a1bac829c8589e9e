"""The controller service: the public CNM API (cnm.controller.v1.Controller).

servicer (thin gRPC adapter) -> controller (the one domain facade) ->
networks / endpoints / joins / sandboxes / gc (orchestration, intent first,
undo on failure) over context (shared clients, resolution, atomic
transitions), repository + events (Redis), hosts (driver-service records),
ipam_client / drivers_client (outgoing calls with deadlines); reconciler
finishes or rolls back what a dead controller left; convert is the only
proto <-> model mapping; models, validate, resolve, listing, rules are pure.
"""

"""Values that cross services: each defined once, with its validation, its
conversion to and from the cnm.types.v1 messages, and one JSON codec.

The controller, the driver service and the firewall all use these types. The
controller validates what a user sends; the driver service calls the same
functions on what reaches it directly (it is the privileged process and must
refuse bad input itself), so a rule and its message exist once.

- `ports`: port bindings, exposed ports and the protocol list;
- `dns`: a sandbox's resolv.conf settings and /etc/hosts extra entries;
- `names`: a container's hostname, domain name and network aliases;
- `codec`: frozen dataclasses <-> JSON (the stored form of every record).

Nothing here imports a *_service package.
"""

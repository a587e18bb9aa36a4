"""DNS: the records every mail domain needs, published through octoDNS providers, checked
on every authoritative server, and explained when wrong."""

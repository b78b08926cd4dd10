"""Running replicas: Envoy front-proxy config (:mod:`.envoy`) and the health probe (:mod:`.healthcheck`)."""

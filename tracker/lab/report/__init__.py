"""What a person looks at: the HTML replay report (:mod:`.html`) and overlays and plots (:mod:`.viz`)."""

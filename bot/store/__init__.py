"""The referral store: models, repository, unit of work and migrations."""

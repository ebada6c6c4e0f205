"""The generated demo corpus: talking heads animated from photographs that ship with installed packages,
driven by speech the code synthesises, and lip-sync-style fakes of them. Pure functions, one job per module:
photos (faces and identities), speech (audio), animate (frames), fakes (artifacts), plan (what to make),
writer (deterministic files), sheet (a contact sheet)."""

"""Files on disk: atomic writes, image conversions and PNG/GIF files, MP4 walks."""

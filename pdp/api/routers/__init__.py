"""One router per resource: public, definitions, admin, ethics, dmp, siop."""

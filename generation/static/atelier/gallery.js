// The lightbox over the collection, the job page and the studio.

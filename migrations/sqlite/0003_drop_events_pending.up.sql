-- events_pending took an entry per webhook at a random place, (image, hostname) order: one more
-- page written per webhook, next to the `updates` row and events_by_image. It is not needed to
-- find what is pending: an acknowledgement covers every pending event of the images it
-- acknowledges, so an event is pending only while its image's `updates` row is, and those
-- events are reached through events_by_image from the pending `updates` rows.
DROP INDEX events_pending;

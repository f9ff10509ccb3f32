// Package events reads Prefect's event stream as a relay source: one
// subscriber across every worker process (a Redis lease) reads the flow-run
// state events of /api/events/out and feeds them to the relay's ingress
// (relay.Ingress.Ingest), the same pipeline as Prefect's webhook, so dedupe,
// per-run order, delivery and retries are the relay's. A cursor in Redis (the
// last event's occurred time and id) lets every (re)connect backfill what it
// missed through /api/events/filter before going live.
//
// Redis keys, shared by every worker:
//
//	events:lease       the subscriber's lease (SET NX PX; renewed; its holder alone reads the stream)
//	events:cursor      JSON {"occurred", "id"} of the newest event handled
//	events:origin      unix µs of the very first start: no backfill reaches before it
//	events:generation  INCR'd at every successful (re)connect
//	events:live        the current generation while the subscriber is connected and has finished its
//	                   backfill (PX 15 s, refreshed every few seconds; deleted on disconnect)
//
// events:live and the Observer interface are the contract with readers that
// must know no state event can have been missed (a cache of terminal runs):
// an entry stored under generation g may be served while events:live is g.
package events

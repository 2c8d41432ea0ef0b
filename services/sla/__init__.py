"""SLA: starts, stops and fires SLA clocks on case events, with durable timers."""

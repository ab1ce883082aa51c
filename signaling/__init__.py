"""The signaling layer: one WebSocket per participant, joining the visit domain and the SFU."""

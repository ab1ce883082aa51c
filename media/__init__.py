"""The SFU engine: one RTCPeerConnection per participant, encoded frames forwarded untouched.

A leaf package: it imports no other package of screenvisit. It reports what happens through the
`RoomObserver` protocol that the layer above implements.
"""

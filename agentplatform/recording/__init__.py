"""Call recordings: a stereo WAV per call (left the caller, right the agent as the
caller heard it) on the carrier's inbound clock, written off the audio path."""

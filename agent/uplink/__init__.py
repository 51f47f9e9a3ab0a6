"""The MQTT side: sessions, the SenML envelope, backend acknowledgements."""

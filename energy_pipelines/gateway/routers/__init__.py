"""The gateway's routes, one router per concern; `gateway.app.create_app` composes them."""

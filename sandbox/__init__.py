"""The perpbot sandbox: a local perpetual-futures exchange with exact, documented mechanics."""

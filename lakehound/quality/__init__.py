"""Detection quality on real labelled data: ADBench protocol, NAB scoring, reports."""

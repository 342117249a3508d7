"""3-D dust maps (brutus.dust). The Bayestar reader lands with the BruteForce issue (#3)."""

__all__: list = []

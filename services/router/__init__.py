"""Router: classifies contacts and offers cases to agents by skill, capacity and presence."""

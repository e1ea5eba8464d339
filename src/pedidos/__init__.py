"""Pedidos: concurrent, transactional purchase-order processing."""

from pedidos.app import create_app

__all__ = ["create_app"]

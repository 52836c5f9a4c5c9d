"""The Media Service: upload slots, multipart sessions, dedup proofs and signed download URLs.

It never touches media bytes, except the one small ranged read that checks a dedup proof.
"""
